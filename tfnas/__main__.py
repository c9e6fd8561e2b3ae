from tfnas.cli import main

raise SystemExit(main())
