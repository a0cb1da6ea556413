import sys

from spark_trainer.recipes.text_lora.main import main

sys.exit(main())
