// A TCP proxy between the browser and the gateway's HTTP listener, for the tests that need a
// connection to fail in a chosen way: it reads the MQTT packets inside the WebSocket frames both
// ways (the log), can drop packets from the gateway before they reach the browser, can cut every
// connection at once, refuse new ones, and forward to another gateway (one restarted on the
// same data directory). Not a test file itself.
//
// Client-to-gateway bytes always pass unchanged. Gateway-to-client bytes pass unchanged too
// until a `drop` predicate is set; from then on each MQTT packet the predicate lets through
// goes in a frame of its own (a frame may hold several packets and a packet span frames, so a
// packet cannot be dropped without reframing).

import { connect, createServer } from 'node:net';

/** Packet type names by MQTT control packet type. */
const TYPES = [, 'connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'suback', 'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect', 'auth'];

/** What the tests read of one MQTT packet (`bytes`: the whole packet). */
function describe(bytes, body) {
  const type = TYPES[bytes[0] >> 4];
  const packet = { type };
  if (type === 'connect') {
    const nameLength = body.readUInt16BE(0);
    packet.protocolVersion = body[2 + nameLength];
    packet.cleanStart = (body[3 + nameLength] & 0x02) !== 0;
  } else if (type === 'connack') {
    packet.sessionPresent = (body[0] & 0x01) !== 0;
  } else if (type === 'publish') {
    packet.dup = (bytes[0] & 0x08) !== 0;
    packet.qos = (bytes[0] >> 1) & 0x03;
    const topicLength = body.readUInt16BE(0);
    packet.topic = body.subarray(2, 2 + topicLength).toString();
    if (packet.qos > 0) packet.packetId = body.readUInt16BE(2 + topicLength);
  } else if (['puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'suback', 'unsubscribe', 'unsuback'].includes(type)) {
    packet.packetId = body.readUInt16BE(0);
  }
  return packet;
}

/** Splits complete MQTT packets off the front of `state.mqtt`, calling `each(bytes, info)`. */
function splitPackets(state, each) {
  for (;;) {
    const buffer = state.mqtt;
    let length = 0;
    let offset = 1;
    for (let shift = 0; ; shift += 7) {
      if (offset >= buffer.length) return;
      const byte = buffer[offset++];
      length += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) break;
    }
    if (buffer.length < offset + length) return;
    const bytes = buffer.subarray(0, offset + length);
    state.mqtt = buffer.subarray(offset + length);
    each(bytes, describe(bytes, bytes.subarray(offset)));
  }
}

/**
 * Splits complete WebSocket frames off the front of `state.frames`, calling `each(raw, opcode,
 * payload)` with the payload unmasked.
 */
function splitFrames(state, each) {
  for (;;) {
    const buffer = state.frames;
    if (buffer.length < 2) return;
    let length = buffer[1] & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (buffer.length < 4) return;
      length = buffer.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (buffer.length < 10) return;
      length = Number(buffer.readBigUInt64BE(2));
      offset = 10;
    }
    const masked = (buffer[1] & 0x80) !== 0;
    const mask = masked ? buffer.subarray(offset, offset + 4) : null;
    if (masked) offset += 4;
    if (buffer.length < offset + length) return;
    const payload = Buffer.from(buffer.subarray(offset, offset + length));
    if (mask) for (let index = 0; index < payload.length; index++) payload[index] ^= mask[index % 4];
    const raw = buffer.subarray(0, offset + length);
    state.frames = buffer.subarray(offset + length);
    each(raw, buffer[0] & 0x0f, payload);
  }
}

/** An unmasked binary frame (gateway to client) holding `payload`. */
function binaryFrame(payload) {
  const header = payload.length < 126 ? Buffer.from([0x82, payload.length]) : Buffer.from([0x82, 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([header, payload]);
}

/**
 * A proxy on a free loopback port forwarding to `targetPort` on 127.0.0.1. `log` holds every
 * MQTT packet seen: `{ connection, from: 'client' | 'gateway', dropped, type, ... }` (see
 * `describe`), connections numbered from 1 in the order accepted.
 */
export async function startProxy(targetPort) {
  const sockets = new Set();
  const proxy = {
    targetPort,
    log: [],
    /** When set, gateway packets for which it returns true are dropped (and logged so). */
    drop: null,
    /** When true, new connections are closed at once. */
    refuse: false,
    connections: 0,
    port: 0,
    /** Closes every open connection, both ways, at once. */
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    close() {
      proxy.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
  const server = createServer((client) => {
    if (proxy.refuse) {
      client.destroy();
      return;
    }
    const connection = ++proxy.connections;
    const gateway = connect(proxy.targetPort, '127.0.0.1');
    for (const socket of [client, gateway]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        gateway.destroy();
      });
    }
    const record = (from, dropped) => (bytes, packet) => proxy.log.push({ connection, from, dropped, ...packet });
    const upstream = { http: Buffer.alloc(0), frames: Buffer.alloc(0), mqtt: Buffer.alloc(0) };
    const downstream = { http: Buffer.alloc(0), frames: Buffer.alloc(0), mqtt: Buffer.alloc(0) };
    // Strips the HTTP request or response head; what follows it is WebSocket frames.
    const afterHead = (state, chunk) => {
      if (state.http === null) return chunk;
      state.http = Buffer.concat([state.http, chunk]);
      const end = state.http.indexOf('\r\n\r\n');
      if (end < 0) return Buffer.alloc(0);
      const rest = state.http.subarray(end + 4);
      state.http = null;
      return rest;
    };
    client.on('data', (chunk) => {
      gateway.write(chunk);
      upstream.frames = Buffer.concat([upstream.frames, afterHead(upstream, chunk)]);
      splitFrames(upstream, (raw, opcode, payload) => {
        if (opcode !== 0x2 && opcode !== 0x0) return;
        upstream.mqtt = Buffer.concat([upstream.mqtt, payload]);
        splitPackets(upstream, record('client', false));
      });
    });
    gateway.on('data', (chunk) => {
      const headDone = downstream.http === null;
      const frames = afterHead(downstream, chunk);
      if (!headDone) client.write(chunk.subarray(0, chunk.length - frames.length));
      downstream.frames = Buffer.concat([downstream.frames, frames]);
      splitFrames(downstream, (raw, opcode, payload) => {
        if (opcode !== 0x2 && opcode !== 0x0) {
          client.write(raw);
          return;
        }
        const drop = proxy.drop;
        if (!drop) client.write(raw);
        downstream.mqtt = Buffer.concat([downstream.mqtt, payload]);
        splitPackets(downstream, (bytes, packet) => {
          const dropped = Boolean(drop?.(packet));
          record('gateway', dropped)(bytes, packet);
          if (drop && !dropped) client.write(binaryFrame(bytes));
        });
      });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = server.address().port;
  return proxy;
}
