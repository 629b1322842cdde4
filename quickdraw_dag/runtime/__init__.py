"""The shell every entry point shares: arguments and exit codes, signals, locks, atomic writes, disk space, progress."""
