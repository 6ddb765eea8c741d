// A Web Serial port object backed by a pseudo-terminal, for Node.
//
// esptool-js talks to a device through its Transport class, which expects
// the SerialPort object of the Web Serial API (what a browser hands out after
// navigator.serial.requestPort()).  This module provides the part of that
// interface Transport uses: open(), close(), the readable and writable web
// streams, setSignals(), getSignals() and getInfo().  The port is a pty slave
// (espfleet-sim's DIR/ttyK), opened with node:fs.  espfleet-sim puts the pty
// in raw mode from its side, so nothing here touches termios.
//
// Reads and writes use a non-blocking descriptor and retry after a short
// pause on EAGAIN.  A blocking read would sit in a libuv pool thread that
// close() cannot wake, and a later open() of the same path would then have
// two readers sharing the bytes of one pty.

import { constants as fsc } from "node:fs";
import { open } from "node:fs/promises";
import { ReadableStream, WritableStream } from "node:stream/web";
import { setTimeout as delay } from "node:timers/promises";

const READ_CHUNK = 65536;
const IDLE_MS = 1;

// True for the errno codes that mean "nothing to read or no room, retry".
function isAgain(err) {
	return (err && (err.code === "EAGAIN" || err.code === "EWOULDBLOCK"));
}

// Web Serial reports a vanished device as a NetworkError DOMException.
function deviceLost(detail) {
	return (new DOMException(`The device has been lost (${detail}).`,
	    "NetworkError"));
}

export class PtySerialPort {
	// Remember the pty path; nothing is opened until open().
	constructor(path, info = { usbVendorId: 0x303a, usbProductId: 0x0002 }) {
		this.path = path;
		this.info = { ...info };
		this.signalLog = [];
		this.signals = {};
		this.options = null;
		this._fh = null;
		this._readable = null;
		this._writable = null;
		this._pending = new Set();
		this._generation = 0;
	}

	// The USB identity a browser would report; 303a:0002 is the ESP32-S2
	// ROM's USB-OTG download-mode device, as seen on a real Lolin S2 Mini.
	getInfo() {
		return ({ ...this.info });
	}

	// Open the pty (read/write, never as controlling terminal).
	async open(options = {}) {
		if (this._fh !== null)
			throw new DOMException("The port is already open.",
			    "InvalidStateError");
		if (!Number.isInteger(options.baudRate) || options.baudRate <= 0)
			throw new TypeError("open(): baudRate must be a positive " +
			    "integer");
		this._fh = await open(this.path,
		    fsc.O_RDWR | fsc.O_NOCTTY | fsc.O_NONBLOCK);
		this.options = { ...options };
		this._generation++;
	}

	// Close the port; like Chrome, refuse while a stream is locked.
	async close() {
		let fh;

		if (this._fh === null)
			throw new DOMException("The port is already closed.",
			    "InvalidStateError");
		if ((this._readable && this._readable.locked) ||
		    (this._writable && this._writable.locked))
			throw new TypeError("close(): a stream is locked");
		if (this._readable)
			await this._readable.cancel().catch(() => {});
		if (this._writable)
			await this._writable.abort().catch(() => {});
		this._readable = null;
		this._writable = null;
		fh = this._fh;
		this._fh = null;
		this._generation++;
		/* Let an in-flight read or write finish before the fd goes. */
		await Promise.allSettled([...this._pending]);
		await fh.close();
	}

	// Track one file operation so close() can wait for it.
	async _track(promise) {
		this._pending.add(promise);
		try {
			return (await promise);
		} finally {
			this._pending.delete(promise);
		}
	}

	// The readable stream: one per open port, recreated after a cancel or
	// error (the Web Serial rule that lets Transport.disconnect() work).
	get readable() {
		if (this._fh === null)
			return (null);
		if (this._readable === null)
			this._readable = this._makeReadable();
		return (this._readable);
	}

	// The writable stream, same lifetime rules as the readable one.
	get writable() {
		if (this._fh === null)
			return (null);
		if (this._writable === null)
			this._writable = this._makeWritable();
		return (this._writable);
	}

	// Build a byte source that polls the non-blocking pty.
	_makeReadable() {
		const gen = this._generation;
		let stream, stopped = false;

		const forget = () => {
			stopped = true;
			if (this._readable === stream)
				this._readable = null;
		};
		stream = new ReadableStream({
			pull: async (controller) => {
				const buf = Buffer.allocUnsafe(READ_CHUNK);
				let r;

				for (;;) {
					if (stopped || gen !== this._generation)
						return;
					try {
						r = await this._track(this._fh.read(
						    buf, 0, READ_CHUNK, null));
					} catch (err) {
						if (isAgain(err)) {
							await delay(IDLE_MS);
							continue;
						}
						/* EIO: the sim closed the master side. */
						forget();
						controller.error(deviceLost(err.code ||
						    String(err)));
						return;
					}
					if (r.bytesRead === 0) {
						forget();
						controller.error(deviceLost("EOF"));
						return;
					}
					controller.enqueue(new Uint8Array(
					    buf.subarray(0, r.bytesRead)));
					return;
				}
			},
			cancel: () => {
				forget();
			},
		}, { highWaterMark: 0 });
		return (stream);
	}

	// Build a sink that writes every chunk completely before resolving.
	_makeWritable() {
		const gen = this._generation;
		let stream;

		const forget = () => {
			if (this._writable === stream)
				this._writable = null;
		};
		stream = new WritableStream({
			write: async (chunk) => {
				const data = Buffer.from(chunk.buffer,
				    chunk.byteOffset, chunk.byteLength);
				let off = 0, r;

				while (off < data.length) {
					if (gen !== this._generation)
						throw new DOMException("The port " +
						    "is closed.", "InvalidStateError");
					try {
						r = await this._track(this._fh.write(
						    data, off, data.length - off,
						    null));
					} catch (err) {
						if (isAgain(err)) {
							await delay(IDLE_MS);
							continue;
						}
						forget();
						throw deviceLost(err.code ||
						    String(err));
					}
					off += r.bytesWritten;
				}
			},
			close: () => {
				forget();
			},
			abort: () => {
				forget();
			},
		});
		return (stream);
	}

	// Record the requested line states.  A pty has no modem-control lines,
	// so there is nothing to drive: the calls are only logged, in order,
	// for the test to print (esptool-js's reset sequences call this).
	async setSignals(signals = {}) {
		if (this._fh === null)
			throw new DOMException("The port is closed.",
			    "InvalidStateError");
		this.signalLog.push({ ...signals });
		for (const k of ["dataTerminalReady", "requestToSend", "break"]) {
			if (signals[k] !== undefined)
				this.signals[k] = signals[k];
		}
	}

	// The input lines; a pty has none, so all read as inactive.
	async getSignals() {
		if (this._fh === null)
			throw new DOMException("The port is closed.",
			    "InvalidStateError");
		return ({ dataCarrierDetect: false, clearToSend: false,
		    ringIndicator: false, dataSetReady: false });
	}
}
