/* SPDX-License-Identifier: MIT
 *
 * Webhook delivery: a thread of its own (its event loop, its PostgreSQL connection, its DNS
 * resolver) that takes due deliveries from webhook_deliveries (SKIP LOCKED: any number of
 * daemons share them), POSTs each signed event to its endpoint, and records the outcome:
 * delivered on a 2xx answer; else tried again with backoff until webhook_retry_window_s
 * after the event, then failed (and the endpoint disabled if nothing reached it for as
 * long). Off the checkout path entirely: the workers never wait for it.
 *
 * Owns: its event base, DNS base, TLS context, PGconn, the deliveries under way and the
 * connections to endpoints (each owned by the delivery using it, or kept idle for the
 * endpoint's next one), and the hint event (made and freed under a lock, so the shipper may
 * hint at any time, also before start and after stop). Thread: its own; start and stop from
 * main.
 */
#ifndef RD_WEBHOOKS_H
#define RD_WEBHOOKS_H

#include "rd/config.h"

int rd_webhooks_start(const struct rd_config *cfg);
/** Stops the thread; deliveries under way are abandoned (their lease runs out, and another
 * attempt delivers them: at least once). */
void rd_webhooks_stop(void);
/** Any thread (the shipper, after a commit): rows that may have made deliveries are in, so
 * an idle delivery thread claims now instead of at its next poll. A no-op when the thread
 * is not running. */
void rd_webhooks_hint(void);

#endif
