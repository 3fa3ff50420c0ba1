from streamhar.cli.main import main

raise SystemExit(main())
