/** The client's state. */
export type ClientState = "connecting" | "connected" | "reconnecting" | "closed";

/** What `error.code` can be on the errors this package rejects with or dispatches. */
export type MqttErrorCode =
  | "INVALID_OPTIONS"
  | "INVALID_ARGUMENT"
  | "CONNECTION_REFUSED"
  | "BAD_CREDENTIALS"
  | "NOT_AUTHORIZED"
  | "CREDENTIALS_FAILED"
  | "CONNECT_FAILED"
  | "CONNECT_TIMEOUT"
  | "KEEPALIVE_TIMEOUT"
  | "CONNECTION_LOST"
  | "SERVER_DISCONNECTED"
  | "PROTOCOL_ERROR"
  | "SUBSCRIBE_REFUSED"
  | "UNSUBSCRIBE_REFUSED"
  | "PUBLISH_REFUSED"
  | "INVALID_TOPIC"
  | "PACKET_TOO_LARGE"
  | "QOS_NOT_SUPPORTED"
  | "QUEUE_FULL"
  | "CLOSED";

/** An `Error` (name `"MqttError"`) with a stable code and, when the broker gave one, its reason code. */
export interface MqttError extends Error {
  name: "MqttError";
  code: MqttErrorCode;
  /**
   * The MQTT reason code (5.0) or CONNACK return code (3.1.1) the broker sent, e.g. 0x87 (5.0)
   * or 0x05 (3.1.1) not authorized.
   */
  reasonCode?: number;
}

export type QoS = 0 | 1 | 2;

/** User properties: repeated names carry an array of values. */
export type UserProperties = Record<string, string | string[]>;

/** MQTT 5.0 properties. Each packet type carries its own subset. */
export interface Properties {
  payloadFormatIndicator?: 0 | 1;
  messageExpiryInterval?: number;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Uint8Array;
  /** SUBSCRIBE: the identifier to tag matching messages with. */
  subscriptionIdentifier?: number;
  /** Received PUBLISH: the identifiers of the subscriptions it matched. */
  subscriptionIdentifiers?: number[];
  sessionExpiryInterval?: number;
  assignedClientIdentifier?: string;
  serverKeepAlive?: number;
  requestProblemInformation?: 0 | 1;
  willDelayInterval?: number;
  requestResponseInformation?: 0 | 1;
  responseInformation?: string;
  serverReference?: string;
  reasonString?: string;
  receiveMaximum?: number;
  topicAliasMaximum?: number;
  maximumQos?: 0 | 1;
  retainAvailable?: 0 | 1;
  maximumPacketSize?: number;
  wildcardSubscriptionAvailable?: 0 | 1;
  subscriptionIdentifierAvailable?: 0 | 1;
  sharedSubscriptionAvailable?: 0 | 1;
  /** CONNACK and AUTH (5.0 enhanced authentication): the method the client named. */
  authenticationMethod?: string;
  /** CONNACK and AUTH: the broker's authentication data, e.g. a SCRAM server signature. */
  authenticationData?: Uint8Array;
  userProperties?: UserProperties;
}

export interface WillOptions {
  topic: string;
  payload?: string | Uint8Array | ArrayBuffer;
  qos?: QoS;
  retain?: boolean;
  /** Will properties (5.0), e.g. `willDelayInterval`. */
  properties?: Properties;
}

export interface ReconnectOptions {
  /** First delay and floor of every delay; default 1000. */
  minDelayMs?: number;
  /** Ceiling of the exponential growth; default 30000. */
  maxDelayMs?: number;
}

/** What a `credentials` function gives for one connection attempt. */
export interface Credentials {
  username?: string;
  /** A password, or a token (e.g. a JWT) that the broker takes as the password. */
  password?: string | Uint8Array;
  /**
   * The CONNECT's Authentication Data (5.0, with `authenticationMethod`), e.g. the first
   * message of a SCRAM exchange, fresh for every attempt.
   */
  authenticationData?: string | Uint8Array;
}

export interface ConnectOptions {
  /** Default: a random `wasm-…` identifier. */
  clientId?: string;
  /** 5 (default) or 4 (MQTT 3.1.1). */
  protocolVersion?: 4 | 5;
  /** Keep alive in seconds (default 60; 0 disables). */
  keepalive?: number;
  /** Clean session (3.1.1) / clean start of the first connection (5.0); default true. */
  clean?: boolean;
  /** Session Expiry Interval in seconds (5.0). */
  sessionExpiry?: number;
  username?: string;
  password?: string | Uint8Array;
  /**
   * Called before every connection attempt, the first and each reconnect, for the credentials
   * of that attempt (e.g. a fresh token as the password); in place of `username` and
   * `password`. When it throws or rejects (or gives something malformed), the attempt fails
   * with `CREDENTIALS_FAILED`, whose `cause` is what it threw, and the reconnect backoff goes
   * on (the first attempt rejects `connect()`). Also `authenticationData` comes from it.
   */
  credentials?: () => Credentials | Promise<Credentials>;
  /**
   * MQTT 5.0 enhanced authentication: the Authentication Method named in CONNECT (e.g.
   * `"SCRAM-SHA-256"`). The broker's final data arrives in the CONNACK's properties
   * (`connack.properties.authenticationData`, the `connect` event's detail).
   */
  authenticationMethod?: string;
  /** The CONNECT's Authentication Data (with `authenticationMethod`, without `credentials`). */
  authenticationData?: string | Uint8Array;
  /**
   * Answers each AUTH (continue authentication, reason code 0x18) of the broker, in the
   * exchange of a CONNECT or of `reauthenticate()`: called with the AUTH's Authentication Data
   * (empty when it has none), its reason code and its properties; what it returns goes back
   * in an AUTH (continue). When it throws or rejects, the attempt fails (the connection, in a
   * re-authentication) with `CREDENTIALS_FAILED` (`cause`: what it threw), and the client
   * reconnects as after any failure (the first attempt rejects `connect()`).
   */
  onAuth?: (
    data: Uint8Array,
    reasonCode: number,
    properties?: Properties,
  ) => Uint8Array | string | Promise<Uint8Array | string>;
  will?: WillOptions;
  /** Reconnect policy (exponential backoff with full jitter), or `false` for none. */
  reconnect?: ReconnectOptions | boolean;
  /** Operations held while disconnected (default 1000); more reject with `QUEUE_FULL`. */
  offlineQueueLimit?: number;
  /** Time allowed for the WebSocket and the CONNACK, in milliseconds (default 30000). */
  connectTimeoutMs?: number;
  /** The largest packet this client accepts (announced to a 5.0 broker). */
  maximumPacketSize?: number;
  /** Further CONNECT properties (5.0). */
  properties?: Properties;
}

export interface PublishOptions {
  qos?: QoS;
  retain?: boolean;
  properties?: Properties;
}

export interface SubscribeOptions {
  qos?: QoS;
  noLocal?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: 0 | 1 | 2;
  properties?: Properties;
}

export interface UnsubscribeOptions {
  properties?: Properties;
}

export interface SubscribeResult {
  /** The QoS the broker granted. */
  qos: QoS;
  /** The SUBACK reason code (0, 1 or 2 when granted). */
  reasonCode: number;
}

export interface ReauthenticateResult {
  /** 0: the broker's AUTH (success). */
  reasonCode: number;
  /** Its properties: `authenticationData` (the final data, to check), maybe `reasonString`. */
  properties?: Properties;
}

export interface UnsubscribeResult {
  /** 0 success, or 0x11 no subscription existed (5.0). */
  reasonCode: number;
}

/** A received application message. */
export interface MqttMessage {
  topic: string;
  /** A view into the frame's buffer: copy it before transferring `payload.buffer`. */
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  /** MQTT 5.0 properties, when the message has any. */
  properties?: Properties;
  /** The payload as UTF-8 text. */
  text(): string;
  /** The payload parsed as JSON. */
  json(): unknown;
}

export interface ConnectEventDetail {
  sessionPresent: boolean;
  /** CONNACK properties (5.0). */
  properties?: Properties;
}

export interface CloseEventDetail {
  /** Why the connection closed; absent after `end()`. */
  error?: MqttError;
  /** Whether a reconnect follows (a "reconnect" event announces it). */
  reconnect: boolean;
}

export interface ReconnectEventDetail {
  /** 1 for the first retry after a loss. */
  attempt: number;
  /** Delay before the attempt, in milliseconds. */
  delayMs: number;
}

/** The events of `MqttClient`, as `CustomEvent`s carrying `detail`. */
export interface MqttClientEventMap {
  message: CustomEvent<MqttMessage>;
  connect: CustomEvent<ConnectEventDetail>;
  close: CustomEvent<CloseEventDetail>;
  reconnect: CustomEvent<ReconnectEventDetail>;
  error: CustomEvent<MqttError>;
}

/** An MQTT 3.1.1 / 5.0 client over WebSocket. Create it with `MqttClient.connect()`. */
export class MqttClient {
  private constructor();
  /**
   * Frees the client's WebAssembly memory at once, dropping its connection. Otherwise an open
   * client stays alive by itself (like an open WebSocket), and once closed for good (`end()`,
   * or a failure without reconnect) it is freed by the garbage collector with its last reference.
   */
  free(): void;
  [Symbol.dispose](): void;
  /**
   * Connects to `url` (`ws://host:port/mqtt`); resolves once the broker accepted the
   * connection (CONNACK), rejects with an `MqttError` (e.g. `CONNECTION_REFUSED`) otherwise.
   */
  static connect(url: string, options?: ConnectOptions | null): Promise<MqttClient>;
  /**
   * Disconnects (DISCONNECT, so no will is published) and closes the client; pending
   * operations reject with `CLOSED`.
   */
  end(): Promise<void>;
  /** Stops calling a callback given to `onMessage`. */
  offMessage(callback: Function): void;
  /** Stops calling a callback given to `onMessages`. */
  offMessages(callback: Function): void;
  /** Calls `callback(message)` for every message received. */
  onMessage(callback: (message: MqttMessage) => void): void;
  /**
   * Calls `callback(messages)` once per received WebSocket frame with all its messages: the
   * cheapest way to consume high message rates.
   */
  onMessages(callback: (messages: MqttMessage[]) => void): void;
  /**
   * Publishes a message. Resolves once written (QoS 0), on PUBACK (QoS 1) or on PUBCOMP
   * (QoS 2). While disconnected the publish waits in the offline queue; when that is full
   * the Promise rejects with `QUEUE_FULL`.
   */
  publish(
    topic: string,
    payload: string | Uint8Array | ArrayBuffer,
    options?: PublishOptions | null,
  ): Promise<void>;
  /**
   * Subscribes to a topic filter; resolves with `{ qos, reasonCode }` from the SUBACK, and
   * rejects with `SUBSCRIBE_REFUSED` (and the `reasonCode`) when the broker refuses.
   */
  subscribe(filter: string, options?: SubscribeOptions | null): Promise<SubscribeResult>;
  /** Unsubscribes from a topic filter; resolves with `{ reasonCode }` from the UNSUBACK. */
  unsubscribe(filter: string, options?: UnsubscribeOptions | null): Promise<UnsubscribeResult>;
  /**
   * Re-authenticates a connected MQTT 5.0 client that has an `authenticationMethod`: sends
   * AUTH (re-authenticate) with `data`, runs the exchange through `onAuth`, and resolves on the
   * broker's AUTH (success). Rejects with the error that ends the connection when the broker
   * refuses (`SERVER_DISCONNECTED` with its DISCONNECT's `reasonCode`), `CREDENTIALS_FAILED` when
   * `onAuth` fails, `CONNECTION_LOST` when not connected, `INVALID_OPTIONS` without an
   * `authenticationMethod` or while another re-authentication is under way.
   */
  reauthenticate(data?: string | Uint8Array | ArrayBuffer | null): Promise<ReauthenticateResult>;
  /** Adds an event listener for one of the `MqttClientEventMap` events. */
  addEventListener<K extends keyof MqttClientEventMap>(
    type: K,
    listener: (event: MqttClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /** Removes an event listener. */
  removeEventListener<K extends keyof MqttClientEventMap>(
    type: K,
    listener: (event: MqttClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /** The client identifier sent in CONNECT. */
  readonly clientId: string;
  /**
   * The last CONNACK: `{ sessionPresent, properties }`, as the last `connect` event's detail
   * (the first one fires before `connect()` resolves).
   */
  readonly connack: ConnectEventDetail | undefined;
  /** Operations waiting in the offline queue (or for room in the in-flight window). */
  readonly queued: number;
  /** `"connecting" | "connected" | "reconnecting" | "closed"`. */
  readonly state: ClientState;
}
