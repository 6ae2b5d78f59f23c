from aiofarm.adaptors import EntryPoint

from .adaptor import ReplAdaptor

if __name__ == "__main__":
    EntryPoint(ReplAdaptor).start()
