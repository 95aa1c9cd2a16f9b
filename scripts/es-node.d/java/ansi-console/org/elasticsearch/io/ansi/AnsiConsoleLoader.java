package org.elasticsearch.io.ansi;

import java.util.function.Supplier;

/**
 * Stands in for the distribution's ANSI console loader (lib/tools/ansi-console).
 *
 * <p>The server looks this class up by name in lib/tools/ansi-console and asks it for a
 * console to print start-up messages to. A node started by scripts/es-node has no terminal
 * (its output goes to a log file), so there is no console to offer: {@code get} answers
 * null, which the server takes as "no console".
 */
public final class AnsiConsoleLoader implements Supplier<Object> {

    public AnsiConsoleLoader() {
    }

    @Override
    public Object get() {
        return null;
    }
}
