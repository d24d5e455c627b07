from voxline.cli import main

raise SystemExit(main())
