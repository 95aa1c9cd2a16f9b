package org.biofed.searchnode;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * Runs one OpenSearch node in this JVM until the JVM is told to stop.
 *
 * <p>Usage: {@code SearchNode BASE_PATH HTTP_PORT CLUSTER_NAME}. BASE_PATH holds the
 * node's config, data and logs (node_1/...); starting again on the same BASE_PATH
 * recovers the indices written there.
 *
 * <p>A thin wrapper around CodeLibs' OpenSearchRunner: its own {@code main} cannot pin
 * the bind address, the exact HTTP port, single-node discovery or the disk thresholds,
 * which scripts/search-node needs.
 */
public final class SearchNode {

    private SearchNode() {
    }

    public static void main(final String[] args) {
        if (args.length != 3) {
            System.err.println("usage: SearchNode BASE_PATH HTTP_PORT CLUSTER_NAME");
            System.exit(2);
        }
        final String basePath = args[0];
        final int httpPort = Integer.parseInt(args[1]);
        final String clusterName = args[2];

        final OpenSearchRunner runner = new OpenSearchRunner();
        // The runner probes ports upward from its base port and gives up past 9299;
        // we pin http.port ourselves, so switch the probing off.
        runner.setMaxHttpPort(-1);
        // SIGTERM (scripts/search-node stop) runs shutdown hooks: close the node
        // cleanly so the translog is flushed and the node lock released.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (final Exception e) {
                e.printStackTrace();
            }
        }, "search-node-shutdown"));

        runner.onBuild((index, settings) -> {
            // Loopback only: this node is for tests and development, never for a network.
            settings.put("network.host", "127.0.0.1");
            settings.put("http.port", httpPort);
            // One node forms its own cluster; no discovery, no bootstrap checks.
            settings.put("discovery.type", "single-node");
            settings.put("cluster.name", clusterName);
            settings.put("node.name", "biofed-search-node");
            // The runner would otherwise set the deprecated "master" role.
            settings.putList("node.roles", "cluster_manager", "data", "ingest");
            // A nearly full disk (CI machines, laptops) must not make indices read-only
            // or leave shards unassigned.
            settings.put("cluster.routing.allocation.disk.threshold_enabled", false);
        });

        try {
            runner.build(OpenSearchRunner.newConfigs()
                    .basePath(basePath)
                    .numOfNode(1)
                    .clusterName(clusterName));
        } catch (final RuntimeException e) {
            System.err.println("search-node: failed to start OpenSearch");
            e.printStackTrace();
            System.exit(1);
        }
        System.out.println("search-node: started on http://127.0.0.1:" + httpPort);

        // Node threads do not keep the JVM alive by themselves; wait until closed.
        while (!runner.isClosed()) {
            try {
                Thread.sleep(1000);
            } catch (final InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
    }
}
