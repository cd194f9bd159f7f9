"""``blip serve``: BLIP over HTTP with dynamic batching (Ray Serve), and a small web page.

:func:`add_parser` adds the ``serve`` subcommand to the ``blip`` command's parser;
:func:`blip_apps.serve.server.start` / :func:`~blip_apps.serve.server.stop` run it from
Python.  Needs the ``serve`` extra (``pip install 'blip-twin[serve]'``); importing this package
imports neither Ray nor a framework.
"""

from blip_apps.serve.cli import add_parser, cmd_serve

__all__ = ["add_parser", "cmd_serve"]
