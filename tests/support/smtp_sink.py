"""A real SMTP server on loopback (aiosmtpd) that appends every message it
receives to a file, for Tandem's e-mail action test.

usage: smtp_sink.py PORT OUTFILE
"""
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    async def handle_DATA(self, server, session, envelope):
        with open(sys.argv[2], "ab") as f:
            f.write(b"MAIL FROM " + envelope.mail_from.encode() + b"\n")
            f.write(b"RCPT TO " + ",".join(envelope.rcpt_tos).encode() + b"\n")
            f.write(envelope.content + b"\n----\n")
        return "250 OK"


controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
