"""A TCP forwarder between a daemon and a real server, for tests of connections that die in ways
the daemon cannot see coming.

forget() behaves like a load balancer or NAT that lost its connection table (a failover, a
restart of the middlebox): every connection it carried is cut on the server's side, and a
client whose connection sat idle hears nothing until it next sends, when it gets a reset. A
client still waiting for an answer (it sent last) is told at once that the connection ended, as
the server's own reset would: otherwise it would wait for ever. A connection opened after
forget() is forwarded normally.

Ending a connection shuts each socket down before closing it. On Linux, close() alone does not
end a socket that another thread is blocked reading (that read keeps it open, sends no FIN and
never returns). Each connection has one pump thread reading from the client, so when the server
ended a connection (a PostgreSQL restart sends FATAL and closes) the client got the FATAL and
never the end. libpq, having read a FATAL, waits for that end, so the daemon stayed inside its
database call until this process exited: a drain hung for 77 s.

A pump checks "forgotten" and sets or clears "awaiting an answer" under the same lock in which
forget() sets one and reads the other, so a request that crosses forget() either counts as
awaiting, or is met with a reset. Known limit: "awaiting" ends with the server's first bytes
after the request. If forget() comes between two segments of one answer, the client is treated
as idle and waits until it sends again. PostgreSQL on loopback sends a short answer in one
segment, so the tests that use this proxy do not meet it."""
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
                if data and not forgotten:
                    pair[3] = True
            if forgotten and data:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self._close(pair, reset=True)
                return
            if not data:
                break
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
                if data and not forgotten:
                    pair[3] = False
            if forgotten:
                return
            if not data:
                break
            try:
                client.sendall(data)
            except OSError:
                break
        self._close(pair)

    def _close(self, pair, reset=False):
        """Ends both sides: shutdown() first, which wakes the other pump's blocked read and sends
        the FIN at once (close() alone would do neither, see the top comment). With reset, the
        client gets a reset instead (SO_LINGER 0 was set on it), so its end is only closed."""
        with self.lock:
            if pair in self.pairs:
                self.pairs.remove(pair)
        for s in pair[:2]:
            if not (reset and s is pair[0]):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            try:
                s.close()
            except OSError:
                pass

    def forget(self):
        """Cuts every current connection on the server's side; clients learn it on next send."""
        with self.lock:
            pairs = list(self.pairs)
            cut = []
            for pair in pairs:
                pair[2] = True
                cut.append(pair[:2] if pair[3] else pair[1:2])
        for ends in cut:
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
