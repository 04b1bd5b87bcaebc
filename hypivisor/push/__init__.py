"""Web Push for the inbox: who gets a notification (:mod:`.policy`, pure), VAPID keys and subscriptions
(:mod:`.keys`, :mod:`.book`), and the sender (:mod:`.sender`) that the service feeds with inbox events."""
