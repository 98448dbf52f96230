"""pyctr's network helper: a small root daemon that gives unprivileged
users the networks an administrator granted them (issue 11).

One ATTACH exchange (client.py in the user's pyctr, server.py in root's
daemon, over one SOCK_SEQPACKET unix socket; messages in protocol.py):

  user's pyctr                                  pyctr netd serve (root)
  ────────────                                  ───────────────────────
  clone(NEWUSER|NEWNET|...): child waits
  open /proc/CHILD/ns/net
  connect(/run/pyctr/netd.sock) ──────────────▶ accept; SO_PEERCRED: uid, gid
                                                (SO_PEERGROUPS: its groups)
  ATTACH {container, pid, networks} ──────────▶ the one fd (SCM_RIGHTS) is a netns
        + the netns fd                          (NS_GET_NSTYPE) whose user namespace
                                                is owned by uid (NS_GET_USERNS,
                                                NS_GET_OWNER_UID), not the host's;
                                                /proc/PID/ns/net is that netns and
                                                PID's user namespace is uid's;
                                                policy.toml (read now) grants each
                                                network to uid or one of its groups,
                                                within max_containers, ip=/mac= only
                                                where allowed
                                                network.prepare + network.attach
                                                with that fd: devices born in the
                                                netns, leases owned by PID (+ start
                                                time) and uid; all undone on failure
  records ◀──────────────────────────────────── {"ok": [record, ...]} or {"error": line}
  continue at GO                                (a reply nobody reads: undone)

DETACH {container} releases the caller's leases of that container (and the
host-side parts); LIST says which networks the caller may use. The daemon
trusts nothing in a message that the kernel can tell it instead.
"""
