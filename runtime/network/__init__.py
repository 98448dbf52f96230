"""pyctr's built-in networking: a container's interfaces, wired by the
parent through rtnetlink while the container's first process waits. How an
interface reaches beyond the container is its network's kind (kinds/: veth
on a bridge, macvlan); a network is a definition file (config.py) or an
ad-hoc `--net=KIND:TARGET` (request.py).

The runtime calls:
    parse(text) -> NetworkRequest          one --net value
    prepare(paths, requests) -> [Prepared] before clone: every check that
                                           needs no device and no child
    attach(paths, container_id, prepared, pid) -> [record, ...]
    detach(paths, container_id, records)   idempotent
    gc(paths) -> [what was removed, ...]   idempotent
    teardown(paths, kind, device, uplink=None, own_ports=()) -> None or why
                                           a network's host side stays
and `pyctr net ...` is cli.command. Each submodule is imported only when
used, so `pyctr run --net=none` pays nothing for this package.
"""


def parse(text):
    from pyctr.network.request import parse as _parse
    return _parse(text)


def prepare(paths, requests, kernel=None):
    """The requests that need devices, checked and resolved (network files
    read, kinds chosen, the host's devices looked at): [resolve.Prepared].
    Raises one PyctrError; creates nothing."""
    from pyctr.network.resolve import prepare as _prepare
    return _prepare(paths, requests, kernel)


def attach(paths, container_id, prepared, pid, kernel=None, netns_fd=None, uid=None):
    """Create each prepared interface in the netns of `pid` (eth0, eth1, ...)
    with address, routes, lease and host-side parts. Returns JSON-able
    records (wiring.py). Undoes itself and raises PyctrError on failure.
    The network helper (netd) passes the user's netns_fd and uid."""
    from pyctr.network.wiring import attach as _attach
    return _attach(paths, container_id, prepared, pid, kernel, netns_fd, uid)


def detach(paths, container_id, records, kernel=None):
    from pyctr.network.wiring import detach as _detach
    return _detach(paths, container_id, records, kernel)


def gc(paths, kernel=None):
    from pyctr.network.cleanup import gc as _gc
    return _gc(paths, kernel)


def teardown(paths, kind, device, uplink=None, own_ports=(), kernel=None):
    from pyctr.network.cleanup import teardown as _teardown
    return _teardown(paths, kind, device, uplink, own_ports, kernel)
