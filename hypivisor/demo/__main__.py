"""``python -m hypivisor.demo``: see :mod:`hypivisor.demo.launcher`."""

from hypivisor.demo.launcher import main

raise SystemExit(main())
