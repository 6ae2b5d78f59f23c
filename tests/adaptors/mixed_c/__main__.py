import sys

if __name__ == "__main__":
    if sys.argv[1:3] == ["daemon", "_serve"]:
        from aiofarm.adaptors import EntryPoint
        from examples.adaptors.repl_adaptor.adaptor import ReplAdaptor

        EntryPoint(ReplAdaptor).start()
    else:
        from openjd.adaptor_runtime import EntryPoint as OfficialEntryPoint

        from .frontend import FrontendReplAdaptor

        OfficialEntryPoint(FrontendReplAdaptor).start()
