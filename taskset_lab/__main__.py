from taskset_lab.cli import main

main()
