from multinic_ctrl.cli import main

raise SystemExit(main())
