from simgan.cli import main

main()
