"""The link: the interface as the kernel's rtnetlink sees it (through pyroute2), its state,
MTU and routes followed into the engine, also across network namespaces. Never on the packet
path; pyroute2 is imported here only, by the thread that needs it.
"""
