from tests.adaptors.official_repl.adaptor import OfficialReplAdaptor


class FrontendReplAdaptor(OfficialReplAdaptor):
    """Only here so that the official frontend re-enters this package."""
