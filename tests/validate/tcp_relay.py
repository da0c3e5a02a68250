"""TEST DOUBLE: a minimal ``ProxyCommand`` (like ``nc %h %p``): relays stdin/stdout to host:port."""

import os
import socket
import sys
import threading


def main() -> None:
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    sock.settimeout(None)

    def upstream() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(65536):
        os.write(1, data)


if __name__ == "__main__":
    main()
