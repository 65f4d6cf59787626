from retrain_lib.cli.app import main

raise SystemExit(main())
