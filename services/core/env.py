"""The environment variables rlhf-loop reads: secrets travel here, never in argv (which `ps` shows) or files."""

AUTH_TOKEN_ENV = "RLHF_LOOP_AUTH_TOKEN"  # the services' bearer token, for servers and the clients that call them
REWARD_TOKEN_ENV = "RLHF_LOOP_REWARD_TOKEN"  # the token the policy service and backend present to the reward service
BACKEND_PASSWORD_ENV = "RLHF_LOOP_BACKEND_PASSWORD"  # the backend's basic-auth password
WEBHOOK_SECRET_ENV = "RLHF_LOOP_WEBHOOK_SECRET"  # shared secret Label Studio's webhooks carry
LABELSTUDIO_TOKEN_ENV = "RLHF_LOOP_LABELSTUDIO_TOKEN"  # the API token of a Label Studio that `up` did not start
REWARD_URL_ENV = "RLHF_LOOP_REWARD_URL"  # where verl's compute_score finds the reward service (verl passes no options)
REWARD_TLS_CA_ENV = "RLHF_LOOP_REWARD_TLS_CA"  # that service's CA certificate, when it serves TLS
