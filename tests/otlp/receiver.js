#!/usr/bin/env node
/*
 * A real OTLP/HTTP receiver for switchboard-otel's integration tests.
 *
 * Wraps @elastic/mockotlpserver's module API because its CLI always binds the fixed
 * ports 4317/4318, which parallel test runs would fight over. Usage:
 *
 *     node tests/otlp/receiver.js [port]      # port 0 (default) picks a free port
 *
 * Writes one JSON object per line to stdout:
 *   {"event":"listening","url":"http://127.0.0.1:PORT/"}
 *   {"event":"request","path":"/v1/traces","headers":{...}}   one per HTTP request
 *   {"event":"trace","trace":{...}}   the ExportTraceServiceRequest, normalised by
 *                                     mockotlpserver (hex ids, attribute maps, enum names)
 * Exits when stdin closes or on SIGTERM/SIGINT, so a test that dies does not leak it.
 */
'use strict';

const {MockOtlpServer, normalizeTrace} = require('@elastic/mockotlpserver');

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

async function main() {
    const port = Number(process.argv[2] ?? 0);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new Error(`invalid port: ${process.argv[2]}`);
    }
    const server = new MockOtlpServer({
        logLevel: 'warn',
        services: ['http'],
        httpHostname: '127.0.0.1',
        httpPort: port,
        onRequest: (req) => emit({event: 'request', path: req.path, headers: req.headers}),
        onTrace: (trace) => emit({event: 'trace', trace: normalizeTrace(trace)}),
    });
    await server.start();
    emit({event: 'listening', url: server.httpUrl});

    let stopping = false;
    const stop = () => {
        if (stopping) return;
        stopping = true;
        server.close().finally(() => process.exit(0));
    };
    process.stdin.on('end', stop);
    process.stdin.resume();
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
}

main().catch((err) => {
    console.error(`otlp receiver failed: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
});
