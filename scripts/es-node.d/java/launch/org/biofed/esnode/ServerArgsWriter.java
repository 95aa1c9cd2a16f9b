package org.biofed.esnode;

import java.io.BufferedOutputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;

import org.elasticsearch.bootstrap.ServerArgs;
import org.elasticsearch.common.io.stream.OutputStreamStreamOutput;
import org.elasticsearch.common.settings.KeyStoreWrapper;
import org.elasticsearch.common.settings.Settings;

/**
 * Writes the start-up arguments an Elasticsearch 8 server reads from its standard input.
 *
 * <p>Usage: {@code ServerArgsWriter OUT_FILE CONFIG_DIR LOGS_DIR [setting=value ...]}.
 *
 * <p>The server (main class {@code org.elasticsearch.bootstrap.Elasticsearch}) expects the
 * launcher that started it to send a serialised {@link ServerArgs} on stdin; the official
 * launcher lives in the unpublished server-cli. This writes the same record with the public
 * {@code ServerArgs.writeTo}: not daemonized, not quiet, no pid file, an empty keystore, and
 * the node settings given as arguments. scripts/es-node feeds the file to the server.
 */
public final class ServerArgsWriter {

    private ServerArgsWriter() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: ServerArgsWriter OUT_FILE CONFIG_DIR LOGS_DIR [setting=value ...]");
            System.exit(2);
        }
        final Settings.Builder settings = Settings.builder();
        for (int i = 3; i < args.length; i++) {
            final int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("ServerArgsWriter: expected setting=value, got '" + args[i] + "'");
                System.exit(2);
            }
            settings.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        // An empty keystore: the node needs no secure settings (no TLS, no credentials).
        final KeyStoreWrapper keystore = KeyStoreWrapper.create();
        final ServerArgs serverArgs = new ServerArgs(
            false, false, null, keystore, settings.build(), Path.of(args[1]), Path.of(args[2]));
        try (OutputStream file = new BufferedOutputStream(Files.newOutputStream(Path.of(args[0])));
             OutputStreamStreamOutput out = new OutputStreamStreamOutput(file)) {
            serverArgs.writeTo(out);
        }
    }
}
