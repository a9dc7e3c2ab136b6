from optimkit.cli import main

main()
