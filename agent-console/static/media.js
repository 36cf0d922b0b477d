// Voice and video through the server: one RTCPeerConnection to Careline's
// SFU, signaled over /api/contacts/{id}/media. The offer carries one audio
// m-line per party this page may hear (the first sends the microphone), and
// as many video m-lines when video is on; the server fills them (slots) and
// sends a roster saying which slot carries whom.

const SLOTS = 3;

export async function joinCall({ contact, token = null, video = false, media = null, onRoster = () => {}, onError = () => {} }) {
  const url = new URL(`/api/contacts/${contact}/media`, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  if (token) url.searchParams.set('token', token);
  const ws = new WebSocket(url);
  const queue = [];
  let wake = null;
  ws.onmessage = (e) => { queue.push(JSON.parse(e.data)); wake?.(); };
  const next = async () => {
    while (!queue.length) await new Promise((r) => { wake = r; });
    return queue.shift();
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error('the call could not be joined'));
  });
  const welcome = await next();
  if (welcome.type !== 'welcome') throw new Error(welcome.message || 'the call could not be joined');

  // No camera (or no permission for it): the call goes on with voice only.
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video })
    .catch((e) => (video ? navigator.mediaDevices.getUserMedia({ audio: true }) : Promise.reject(e)));
  const pc = new RTCPeerConnection({ iceServers: welcome.ice_servers });
  const [mic] = stream.getAudioTracks();
  pc.addTransceiver(mic, { direction: 'sendrecv', streams: [stream] });
  for (let i = 1; i < SLOTS; i++) pc.addTransceiver('audio', { direction: 'recvonly' });
  const [camera] = stream.getVideoTracks();
  if (camera) {
    pc.addTransceiver(camera, { direction: 'sendrecv', streams: [stream] });
    for (let i = 1; i < SLOTS; i++) pc.addTransceiver('video', { direction: 'recvonly' });
  }
  const slots = new Map(); // "audio-0" -> element
  pc.ontrack = (e) => {
    const el = document.createElement(e.track.kind === 'video' ? 'video' : 'audio');
    el.autoplay = true;
    el.playsInline = true;
    el.srcObject = new MediaStream([e.track]);
    // The slot is the m-line's place among those of its kind (the server
    // fills them in the order they were offered).
    const kind = e.track.kind;
    const n = pc.getTransceivers().filter((t) => t.receiver.track.kind === kind).indexOf(e.transceiver);
    const id = `${kind}-${n}`;
    el.dataset.slot = id;
    slots.set(id, el);
    showSlots();
    media?.append(el);
  };
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) ws.send(JSON.stringify({ type: 'candidate', ...e.candidate.toJSON() }));
  };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  ws.send(JSON.stringify({ type: 'offer', sdp: offer.sdp }));

  let roster = [];
  // Show only the slots that carry someone heard now (video only when they send it).
  function showSlots() {
    slots.forEach((el, id) => {
      const [kind, n] = id.split('-');
      const who = roster.find((p) => p[`${kind}_slot`] === Number(n));
      el.hidden = !(who && who.heard && (kind === 'audio' || who.video));
      if (who) el.title = `${who.role} ${who.id}`;
    });
  }
  const call = {
    pc,
    stream,
    get roster() { return roster; },
    send: (m) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(m)),
    mute(muted) { mic.enabled = !muted; call.send({ type: 'mute', muted }); },
    video(on) { if (camera) camera.enabled = on; call.send({ type: 'video', on }); },
    hold(participant, on) { call.send({ type: 'hold', participant, on }); },
    supervise(mode, agent) { call.send({ type: 'supervise', mode, ...(agent ? { agent } : {}) }); },
    leave() {
      call.send({ type: 'leave' });
      call.close();
    },
    close() {
      closed = true;
      stream.getTracks().forEach((t) => t.stop());
      pc.close();
      ws.close();
      slots.forEach((el) => el.remove());
    },
  };
  let closed = false;
  (async () => {
    while (!closed) {
      const m = await next();
      if (m.type === 'answer') await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
      else if (m.type === 'candidate') await pc.addIceCandidate(m).catch(() => {});
      else if (m.type === 'roster') {
        roster = m.participants;
        showSlots();
        onRoster(roster);
      }
      else if (m.type === 'error') onError(m.message);
    }
  })();
  return call;
}
