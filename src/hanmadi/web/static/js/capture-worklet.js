// AudioWorklet: hands each block of microphone samples (channel 0) to the page, which downsamples and encodes.

class CaptureProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) this.port.postMessage(channel.slice(0));
    return true;
  }
}

registerProcessor("hanmadi-capture", CaptureProcessor);
