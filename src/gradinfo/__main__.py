"""``python -m gradinfo``: the same as the ``gradinfo`` command."""

from gradinfo.cli import app

app(prog_name="gradinfo")
