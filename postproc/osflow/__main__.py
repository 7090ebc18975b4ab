from osflow.cli import main

raise SystemExit(main())
