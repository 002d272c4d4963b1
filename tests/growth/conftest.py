"""Lets the growth tests import their shared `growth_helpers` under --import-mode=importlib."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
