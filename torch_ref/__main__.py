"""`python -m torch_ref`: the command line of torch_ref.cli."""

from torch_ref.cli import main

raise SystemExit(main())
