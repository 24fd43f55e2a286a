"""The MQTT QoS 1 outbox kept in a file, so queued telemetry survives a lost
link, a reboot and deep sleep. Same interface as core.mqtt_client.MemoryOutbox.

The file is a log of records, appended and flushed one at a time:
    b'P' pid(2) length(2) packet     a message waiting for its PUBACK
    b'A' pid(2)                       that message was acknowledged
RAM holds only (pid, offset, length) per waiting message; packets are read
back from the file when the client replays them. The log is rewritten with
only the waiting messages when it holds more dead bytes than live ones, and
emptied when nothing waits. A torn last record (power cut) is ignored.
"""
from ...core.mqtt_client import OutboxFull


class FileOutbox:
    def __init__(self, path, max_messages=32, max_bytes=16384):
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._index = []      # [pid, offset, length] in publish order
        self._bytes = 0
        self._size = 0        # bytes in the log file
        self._rec = memoryview(bytearray(5))   # a record's header, written in place
        try:   # the log left by the last run
            f = open(path, 'rb')
        except OSError:
            return
        with f:
            data = f.read()
        pos = 0
        n = len(data)
        while pos + 3 <= n:
            kind = data[pos]
            pid = data[pos + 1] << 8 | data[pos + 2]
            if kind == 0x50 and pos + 5 <= n:        # 'P'
                size = data[pos + 3] << 8 | data[pos + 4]
                if pos + 5 + size > n:
                    break
                self._index.append([pid, pos + 5, size])
                self._bytes += size
                pos += 5 + size
            elif kind == 0x41:                       # 'A'
                self._forget(pid)
                pos += 3
            else:
                break
        self._size = pos
        if pos != n:   # drop a torn tail before appending after it
            self._rewrite()

    def room(self, size):
        return len(self._index) < self.max_messages and self._bytes + size <= self.max_bytes

    def append(self, pid, packet):
        n = len(packet)
        if not self.room(n) or n > 0xFFFF:
            raise OutboxFull('outbox holds %d messages, %d bytes' % (len(self._index), self._bytes))
        with open(self.path, 'ab') as f:
            f.write(self._record(0x50, pid, n))
            f.write(packet)
        self._index.append([pid, self._size + 5, n])
        self._size += 5 + n
        self._bytes += n

    def ack(self, pid):
        if not self._forget(pid):
            return False
        if not self._index:     # nothing waits: the log is emptied in place
            open(self.path, 'wb').close()
            self._size = 0
        elif self._size - self._bytes - 5 * len(self._index) > self._bytes:
            self._rewrite()
        else:
            self._record(0x41, pid, 0)
            with open(self.path, 'ab') as f:
                f.write(self._rec[:3])
            self._size += 3
        return True

    def _record(self, kind, pid, n):
        r = self._rec
        r[0] = kind
        r[1] = pid >> 8
        r[2] = pid & 0xFF
        r[3] = n >> 8
        r[4] = n & 0xFF
        return r

    def _forget(self, pid):
        for i in range(len(self._index)):
            if self._index[i][0] == pid:
                self._bytes -= self._index[i][2]
                self._index.pop(i)
                return True
        return False

    def _rewrite(self):
        items = list(self)
        tmp = self.path + '.tmp'
        with open(tmp, 'wb') as f:
            pos = 0
            index = []
            for pid, packet in items:
                n = len(packet)
                f.write(self._record(0x50, pid, n))
                f.write(packet)
                index.append([pid, pos + 5, n])
                pos += 5 + n
        import os
        os.rename(tmp, self.path)
        self._index = index
        self._size = pos

    def __iter__(self):
        if not self._index:
            return iter(())
        return self._packets()

    def _packets(self):
        with open(self.path, 'rb') as f:
            for pid, off, n in list(self._index):
                f.seek(off)
                yield pid, f.read(n)

    def __len__(self):
        return len(self._index)

    def __contains__(self, pid):
        for item in self._index:   # (the file is not read)
            if item[0] == pid:
                return True
        return False
