from aiofarm.adaptors import EntryPoint


def load() -> type:
    # imported only by the commands that run the adaptor (run, daemon _serve, versions)
    from .adaptor import ReplAdaptor

    return ReplAdaptor


if __name__ == "__main__":
    EntryPoint(load, name="ReplAdaptor").start()
