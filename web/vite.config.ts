import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` proxies the API to a local `scripts/serve`, so the app runs on one origin
// in development as it does when the server serves the build.
export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", sourcemap: false, chunkSizeWarningLimit: 1000 },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:5001", changeOrigin: false },
      "/ws": { target: "ws://127.0.0.1:5001", ws: true },
    },
  },
});
