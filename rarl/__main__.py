from rarl.cli import main

raise SystemExit(main())
