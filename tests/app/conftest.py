"""The dashboard's fixture (a real run history) for the tests of this folder."""

from ui_helpers import ui_project

__all__ = ["ui_project"]
