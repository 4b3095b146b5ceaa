"""Native SIP: a user agent server over UDP with G.711 RTP, the way OpenAI's SIP interface works
(an incoming call webhook, then accept / reject / refer / hangup over HTTP)."""
