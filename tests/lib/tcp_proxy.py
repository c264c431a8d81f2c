"""A TCP forwarder between a daemon and a real server, for tests of connections that die in ways
the daemon cannot see coming.

forget() behaves like a load balancer or NAT that lost its connection table (a failover, a
restart of the middlebox): every connection it carried is cut on the server's side, and a
client whose connection sat idle hears nothing until it next sends, when it gets a reset. A
client still waiting for an answer (it sent last) is told at once that the connection ended, as
the server's own reset would: otherwise it would wait for ever. A connection opened after
forget() is forwarded normally."""
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, host, port):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs = []  # [client, upstream, forgotten, awaiting an answer]
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        pair = [client, upstream, False, False]
        with self.lock:
            self.pairs.append(pair)
            self.accepted += 1
        threading.Thread(target=self._pump_up, args=(pair,), daemon=True).start()
        threading.Thread(target=self._pump_down, args=(pair,), daemon=True).start()

    def _pump_up(self, pair):
        """Client to server. Data from a client whose connection was forgotten is answered
        with a reset, as from a middlebox that no longer knows the connection."""
        client, upstream = pair[0], pair[1]
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            with self.lock:
                forgotten = pair[2]
            if forgotten and data:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
            if not data:
                break
            with self.lock:
                pair[3] = True
            try:
                upstream.sendall(data)
            except OSError:
                break
        self._close(pair)

    def _pump_down(self, pair):
        """Server to client; after forget() nothing more reaches the client, not even the
        end of the connection."""
        client, upstream = pair[0], pair[1]
        while True:
            try:
                data = upstream.recv(65536)
            except OSError:
                data = b""
            with self.lock:
                forgotten = pair[2]
            if forgotten:
                return
            if not data:
                break
            with self.lock:
                pair[3] = False
            try:
                client.sendall(data)
            except OSError:
                break
        self._close(pair)

    def _close(self, pair):
        with self.lock:
            if pair in self.pairs:
                self.pairs.remove(pair)
        for s in pair[:2]:
            try:
                s.close()
            except OSError:
                pass

    def forget(self):
        """Cuts every current connection on the server's side; clients learn it on next send."""
        with self.lock:
            pairs = list(self.pairs)
            for pair in pairs:
                pair[2] = True
        for pair in pairs:
            ends = pair[:2] if pair[3] else pair[1:2]
            for end in ends:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(pairs)

    def close(self):
        self.listener.close()
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            self._close(pair)
