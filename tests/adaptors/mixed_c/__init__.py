"""Official frontend, aiofarm backend: the official EntryPoint re-enters this package
for ``daemon _serve``, which is routed to aiofarm's backend."""
