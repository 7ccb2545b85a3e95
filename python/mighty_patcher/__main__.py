from mighty_patcher.cli import main

raise SystemExit(main())
