-- The port on the proxy that leads to an ssh/jupyter instance's sshd: allocated once by the
-- server and kept, so it stays the same across proxy and server restarts.
ALTER TABLE instances ADD COLUMN proxy_port INTEGER;
CREATE UNIQUE INDEX instances_proxy_port ON instances (proxy_port);
