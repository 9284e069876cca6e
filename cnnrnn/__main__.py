"""``python -m cnnrnn`` is the ``cnnrnn`` command."""
import sys

from .cli import main

sys.exit(main())
