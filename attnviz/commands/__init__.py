"""What each command does, as library functions: the command line parses its options and hands off to these."""
