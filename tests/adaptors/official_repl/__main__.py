from openjd.adaptor_runtime import EntryPoint

from .adaptor import OfficialReplAdaptor

if __name__ == "__main__":
    EntryPoint(OfficialReplAdaptor).start()
