import sys

if __name__ == "__main__":
    if sys.argv[1:3] == ["daemon", "_serve"]:
        from openjd.adaptor_runtime import EntryPoint as OfficialEntryPoint

        from tests.adaptors.official_repl import OfficialReplAdaptor

        OfficialEntryPoint(OfficialReplAdaptor).start()
    else:
        from aiofarm.adaptors import EntryPoint
        from examples.adaptors.repl_adaptor.adaptor import ReplAdaptor

        EntryPoint(
            ReplAdaptor, reentry=[sys.executable, "-m", "tests.adaptors.mixed_d"], serve_protocol="openjd"
        ).start()
