"""Framework adapters (see :mod:`mighty_patcher.hooks`): one module per framework, each
imported only once the program imports that framework."""
