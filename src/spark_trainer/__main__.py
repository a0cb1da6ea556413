from spark_trainer.cli import main

main()
