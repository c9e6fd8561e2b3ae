from tfnas.cli import main

if __name__ == "__main__":  # a spawned timing process re-imports the main module: it must not run the CLI
    raise SystemExit(main())
