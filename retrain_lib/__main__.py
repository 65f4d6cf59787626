from retrain_lib.cli import main

raise SystemExit(main())
