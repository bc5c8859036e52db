"""`python -m attnviz.cli`."""

import sys

from attnviz.cli.app import main

sys.exit(main())
