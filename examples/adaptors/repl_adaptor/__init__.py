"""Example adaptor: drives ``repl_app.py`` (start it once, one ``render`` per task).
The class is in :mod:`.adaptor`; this package imports nothing, so that the per-task
``daemon run`` stays cheap."""
